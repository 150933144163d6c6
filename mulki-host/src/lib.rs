//! mulki-host: everything that touches files, the terminal or threads of the OS.
