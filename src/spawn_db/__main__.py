from spawn_db.cli.main import main

main()
