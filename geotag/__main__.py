from geotag.cli import main

main()
