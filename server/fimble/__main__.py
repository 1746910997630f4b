from fimble.cli.main import main

raise SystemExit(main())
