"""Black-box tests: the real server as a process, spoken to over DNS on loopback."""
