#include "cli.h"

int cmd_pull(sbx_cli *cli, int argc, char **argv)
{
    (void)cli;
    (void)argc;
    (void)argv;
    sbx_error err = SBX_ERROR_INIT;
    sbx_error_set(&err, SBX_EUNSUPPORTED, "'pull' is not implemented yet");
    return cli_fail(&err);
}
