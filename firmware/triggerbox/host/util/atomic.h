// Host stand-in for avr-libc's <util/atomic.h>: there are no interrupts to hold off here.
#pragma once

#define ATOMIC_RESTORESTATE 0
#define ATOMIC_BLOCK(type) for (int atomicOnce = 1; atomicOnce; atomicOnce = 0)
