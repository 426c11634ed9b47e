/* recipes: placeholder until the module lands. */
int sbx_recipes_placeholder_(void);
int sbx_recipes_placeholder_(void) { return 0; }
