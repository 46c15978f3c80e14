"""The ``alexnet-deploy`` command line: one module per command, joined in :mod:`alexnet_deploy.cli.main`."""
