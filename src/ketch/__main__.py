from ketch.cli.main import main

main()
