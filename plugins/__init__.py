"""The plugins bundled with gankit. Each module is an ordinary plugin, found through the
``gankit`` entry-point group and using only gankit's public API, as a third party's would."""
