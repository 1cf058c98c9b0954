import multiprocessing
import sys

from compressor_gui.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # benchmarks spawn child processes, also when frozen
    sys.exit(main())
