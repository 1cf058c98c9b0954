import sys

from compressor_gui.cli import main

sys.exit(main())
