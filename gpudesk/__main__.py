import sys

from gpudesk.cli.main import main

sys.exit(main())
