from runctrace.cli import main

main()
