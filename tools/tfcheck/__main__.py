import sys

from tools.tfcheck.check import main

sys.exit(main(sys.argv[1:]))
