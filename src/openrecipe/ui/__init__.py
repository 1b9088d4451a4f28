"""The web workbench (`openrecipe ui`): data review, recipe forms, runs that survive the browser, chat, ship."""
