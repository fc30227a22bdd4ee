-- Blocks the worker thread for `ms` milliseconds without spinning (memory bench).
local ffi = require "ffi"
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")
return function(ms) ffi.C.poll(nil, 0, ms or 100) end
