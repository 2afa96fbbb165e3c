"""`python -m yangyang_rec.bench`: see run.py.

Not monkey-patched on purpose: the stand-in uses gevent's own sockets, and the upload figures
compare the shipper with boto3 on real threads, as a plain script would run it.
"""

import sys

from yangyang_rec.bench.run import main

sys.exit(main())
