import sys

from minirun.cli import main

sys.exit(main())
