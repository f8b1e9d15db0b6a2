"""The hooks a program attaches to: packet filters, CPU-frequency policies, tracepoints, functions."""
