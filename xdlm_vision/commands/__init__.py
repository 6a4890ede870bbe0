"""CLI subcommands, one module each.

Every module here defines ``HELP`` (one line for ``xdlm-vision --help``),
``add_arguments(parser)`` and ``run(args) -> int``. Register a new command by adding one line
to ``COMMANDS``; modules are imported only when their command runs (or when ``--help`` lists
them), so a command's heavy imports never slow down the others.
"""

# subcommand name -> module under xdlm_vision.commands
COMMANDS: dict[str, str] = {
    "eval": "eval",
    "extract-codes": "extract_codes",
    "sample-text": "sample_text",
    "train": "train",
    "sample": "sample",
    "edit": "edit",
    "demo": "demo",
    "import-official": "import_official",
}
