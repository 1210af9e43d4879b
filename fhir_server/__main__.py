import sys

from fhir_server.cli import main

sys.exit(main())
