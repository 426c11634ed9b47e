/* Argument parsing shared by the recipe verbs (digest, recipe show). */
#ifndef SBX_CLI_RECIPE_H
#define SBX_CLI_RECIPE_H

#include <stdio.h>

#include "cli.h"

/* Parse "RECIPE [--context DIR]" plus the common options.  Returns -1 to go
 * on, or an exit status (help printed, usage error). */
int cli_recipe_args(sbx_cli *cli, const char *verb, int argc, char **argv, void (*usage_fn)(FILE *),
                    const char **recipe, const char **context);

#endif
