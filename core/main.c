#include <stdio.h>
#include <string.h>

#include "image.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "image") == 0)
        return bh_image_cli_main(argc - 1, argv + 1);
    fputs("boilerhouse: not yet wired\n", stderr);
    return 1;
}
