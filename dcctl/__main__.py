from dcctl.cli.main import main

main()
