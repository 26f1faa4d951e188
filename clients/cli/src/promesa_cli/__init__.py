"""`promesa`: the command line of Promesa, the CRM that tracks every promise until it is kept."""
