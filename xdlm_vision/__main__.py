import sys

from xdlm_vision.cli import main

sys.exit(main())
