from imagecloud.cli import main

main()
