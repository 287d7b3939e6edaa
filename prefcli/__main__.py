from prefcli.cli import main

main()
