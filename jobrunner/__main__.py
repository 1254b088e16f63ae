from jobrunner.cli.app import main

main()
