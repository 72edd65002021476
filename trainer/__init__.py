"""Config loading, validation, object building and the command line."""
