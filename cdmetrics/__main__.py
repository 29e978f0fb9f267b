from cdmetrics.cli import main

main()
