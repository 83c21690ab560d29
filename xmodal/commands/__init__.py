"""Built-in ``xmodal`` subcommands beside LightningCLI's (registered via the hook)."""
