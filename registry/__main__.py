"""`python -m registry …` is `dockyard registry serve …`."""

import sys

from dockyard.cli.main import main

sys.exit(main(["registry", "serve", *sys.argv[1:]]))
