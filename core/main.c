#include <stdio.h>

int main(void)
{
    fputs("boilerhouse: not yet wired\n", stderr);
    return 1;
}
