"""The command-line interface: ``main`` parses arguments; one module per subcommand group."""
