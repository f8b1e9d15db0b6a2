"""The built-in library of kernel Lua: math, strings and patterns on views, maps, print, layouts."""
