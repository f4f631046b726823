from jaxreplica.cli import main

raise SystemExit(main())
