import sys

from sim.fake_coinbase.cli import main

sys.exit(main())
