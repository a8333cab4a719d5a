"""Exit codes of every command: 0 success, 1 a check that ran and failed (``audit verify``), 2 bad
input (one line on stderr naming the file and the problem), 3 an internal error (one line;
details in the log)."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
