from minirun.entry import main

main()
