/* Placeholder until this command's issue lands. */
#include "cmd/cmd.h"

int cmd_info(int argc, char **argv, sp_err *e)
{
    (void)argc; (void)argv;
    return sp_fail(e, SP_EXIT_USAGE, "'info' is not implemented yet");
}
