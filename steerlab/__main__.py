from steerlab.cli import main

main()
