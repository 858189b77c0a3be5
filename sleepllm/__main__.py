from sleepllm.cli import main

raise SystemExit(main())
