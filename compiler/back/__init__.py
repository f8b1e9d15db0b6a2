"""The back end: register allocation, the stack frame, emission as BPF, worst-case cost."""
