package proxy

import "syscall"

// syscallEMFILE is "too many open files", after which accept should pause
// rather than stop.
const syscallEMFILE = syscall.EMFILE
