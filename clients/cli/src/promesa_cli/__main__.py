"""`python -m promesa_cli`: the same as the `promesa` console script."""

from promesa_cli.app import main

main()
