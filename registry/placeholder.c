/* registry: placeholder until the module lands. */
int sbx_registry_placeholder_(void);
int sbx_registry_placeholder_(void) { return 0; }
