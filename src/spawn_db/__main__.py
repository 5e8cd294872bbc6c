from spawn_db.cli.entry import main

main()
