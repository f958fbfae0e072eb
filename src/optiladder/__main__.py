from optiladder.cli import main

main()
