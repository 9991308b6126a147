from tunelab.cli.main import entry

entry()
