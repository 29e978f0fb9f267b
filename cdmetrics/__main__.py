from cdmetrics.entry import main

main()
