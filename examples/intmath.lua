-- Integer functions in kernel Lua: each runs in the kernel with
--   luabpf run-function examples/intmath.lua NAME ARGS...
-- and gives exactly what Lua 5.4 gives.

local LIMIT <const> = 1000

-- greatest common divisor, Euclid's way
function gcd(a, b)
  a, b = math.abs(a), math.abs(b)
  while b ~= 0 do
    a, b = b, a % b
  end
  return a
end

-- integer square root by Newton's method
function isqrt(n)
  assert(n >= 0, "isqrt of a negative number")
  if n < 2 then return n end
  local x, y = n, (n + 1) // 2
  while y < x do
    x, y = y, (y + n // y) // 2
  end
  return x
end

-- steps of the Collatz sequence from n down to 1 (nil past LIMIT steps)
function collatz(n)
  local steps = 0
  while n ~= 1 do
    if steps >= LIMIT then return nil end
    if n % 2 == 0 then n = n // 2 else n = 3 * n + 1 end
    steps = steps + 1
  end
  return steps
end

-- number of set bits, and the lowest set bit
function bits(x)
  local count = 0
  for i = 0, 63 do
    if (x >> i) & 1 == 1 then count = count + 1 end
  end
  return count, x & -x
end

-- the sum of divisors of n, and whether n is perfect
function perfect(n)
  local sum = 0
  for d = 1, n // 2 do
    if n % d == 0 then sum = sum + d end
  end
  return sum, sum == n
end
