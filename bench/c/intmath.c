/* The functions of examples/intmath.lua written in C, as complete BPF programs with
 * the same contract as luabpf's function hook: arguments and results in the ctx,
 * status 0 or an error code, Lua's semantics (floored %, //; 64-bit wrap; loop bounds).
 * Self-contained: no kernel headers.  Compiled by bench/sizes.py with clang -O2 -target bpf. */
typedef long s64;
typedef unsigned long u64;
#define SEC(name) __attribute__((section(name), used))
#define BOUND 1000000

struct ctx1 { s64 status, nret, a_tag, a, r1_tag, r1, r2_tag, r2; };
struct ctx2 { s64 status, nret, a_tag, a, b_tag, b, r1_tag, r1, r2_tag, r2; };

static inline s64 lua_mod(s64 a, s64 b) { s64 r = a % b; if (r != 0 && (r ^ b) < 0) r += b; return r; }
static inline s64 lua_idiv(s64 a, s64 b) { s64 q = a / b; if (q * b != a && (a ^ b) < 0) q -= 1; return q; }
static inline s64 iabs(s64 x) { return x < 0 ? (s64)(0 - (u64)x) : x; }

SEC("syscall") int gcd(struct ctx2 *c)
{
	s64 a = iabs(c->a), b = iabs(c->b);
	for (long n = 0; b != 0; n++) {
		if (n >= BOUND) { c->status = 1; return 0; }
		s64 t = lua_mod(a, b); a = b; b = t;
	}
	c->r1_tag = 3; c->r1 = a; c->nret = 1; c->status = 0;
	return 0;
}

SEC("syscall") int isqrt(struct ctx1 *c)
{
	s64 n = c->a;
	if (n < 0) { c->status = 1; return 0; }
	if (n < 2) { c->r1_tag = 3; c->r1 = n; c->nret = 1; c->status = 0; return 0; }
	s64 x = n, y = lua_idiv(n + 1, 2);
	for (long k = 0; y < x; k++) {
		if (k >= BOUND) { c->status = 2; return 0; }
		x = y; y = lua_idiv(y + lua_idiv(n, y), 2);
	}
	c->r1_tag = 3; c->r1 = x; c->nret = 1; c->status = 0;
	return 0;
}

SEC("syscall") int collatz(struct ctx1 *c)
{
	s64 n = c->a, steps = 0;
	for (long k = 0; n != 1; k++) {
		if (k >= BOUND) { c->status = 1; return 0; }
		if (steps >= 1000) { c->r1_tag = 0; c->r1 = 0; c->nret = 1; c->status = 0; return 0; }
		if (lua_mod(n, 2) == 0) n = lua_idiv(n, 2); else n = 3 * n + 1;
		steps++;
	}
	c->r1_tag = 3; c->r1 = steps; c->nret = 1; c->status = 0;
	return 0;
}

SEC("syscall") int bits(struct ctx1 *c)
{
	s64 x = c->a, count = 0;
	for (int i = 0; i <= 63; i++)
		if (((u64)x >> i & 1) == 1) count++;
	c->r1_tag = 3; c->r1 = count; c->r2_tag = 3; c->r2 = x & -x; c->nret = 2; c->status = 0;
	return 0;
}

SEC("syscall") int perfect(struct ctx1 *c)
{
	s64 n = c->a, sum = 0, stop = lua_idiv(n, 2);
	for (s64 d = 1; d <= stop; d++) {
		if (d > BOUND) { c->status = 1; return 0; }
		if (lua_mod(n, d) == 0) sum += d;
	}
	c->r1_tag = 3; c->r1 = sum; c->r2_tag = sum == n ? 2 : 1; c->r2 = 0; c->nret = 2; c->status = 0;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
