"""Object files: ELF writing and reading, BTF and .BTF.ext."""
