"""stages.extract.cleaning on text extracted from the sample pages, and the extractors end to end.

The excerpts are what trafilatura or resiliparse extract from pages of samples/warc and
samples/extraction_eval (named at each), copied unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.accounting import ShardStats
from stages.extract import decode_html, make_extractor, read_html_pages
from stages.extract.cleaning import clean_text

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

# an.wikipedia.org/wiki/Escopete (samples/warc/cc-main-2024-22-whirlwind.warc.gz), trafilatura:
# the infobox, the article's first paragraphs, its table of mayors.
ESCOPETE_INFOBOX = """\
|  | Iste articlo ye en proceso de cambio enta la ortografía oficial de Biquipedia (la Ortografía de l'aragonés de l'Academia Aragonesa d'a Luenga). Puez aduyar a completar este proceso revisando l'articlo, fendo-ie los cambios ortograficos necesarios y sacando dimpués ista plantilla. | 
| Escopete |  | 
| Municipio de Castiella-La Mancha |  | 
|  |  | 
| Entidat • Estau • Comunidat • Provincia • Comarca | Municipio Espanya Castiella-La Mancha Guadalachara La Alcarria | 
| Superficie | 19,01 km² | 
| Población • Total | 68 hab. (2013) | 
| Altaria • Meyana | 860 m. | 
| Distancia • 47 km | enta Guadalachara | 
| Alcalde | Hilario Lopez Ferrer | 
| Codigo postal | 19119 | 
| Chentilicio | escopetero / escopetera (en castellano) | 
| Coordenadas |  | """
ESCOPETE_PROSE = """\
Escopete ye un municipio d'a provincia de Guadalachara, en a comunidat autonoma de Castiella-La Mancha, Espanya, comarca de La Alcarria y partiu chudicial de Guadalachara.
A suya población ye de 84 habitants (2007), en una superficie de 19,01 km² y una densidat de población de 4,42 hab/km².
Cheografía[editar | modificar o codigo]
Ye situato a 860 metros d'altaria sobre o ran d'a mar, a una distancia de 47 km de Guadalachara, a capital d'a suya provincia, y d'o suyo termin municipal fa parti o lugar de Monteumbría.
Historia[editar | modificar o codigo]
Escopete ye citato en as Relaciones Topográficas de los pueblos de Espanya, feitas por Felipe II de Castiella en 1578."""
ESCOPETE_MAYORS = """\
| Lista d'alcaldes |  |  | 
|---|---|---|
| Lechislatura | Nombre | Partiu politico | 
|---|---|---|
| 1979–1983 |  |  | 
| 2003–2007 |  |  | 
| 2007–2011 | Hilario López Herrer | Partido Socialista Obrero Español | """

# auto-motor.at, Hyundai Santa Fe test (samples/extraction_eval), trafilatura: a data table
# without a header row.
CAR_DATA = """\
| Testwagenpreis ohne Extras | € 68.490,00 | 
| Testwagenpreis mit Extras | € 69.290,00 | 
| davon Steuern | € 11.548,33 | 
| Technische Daten |  | 
| Zylinder | 4 | 
| Hubraum in ccm | 1.598 | 
| Leistung PS/KW | 180/132 | """

# greator.com/innere-zufriedenheit (samples/extraction_eval), resiliparse before tuning: the
# article's last paragraph, then the footer menu.
GREATOR_END = """\
Wenn du deine innere Zufriedenheit steigern möchtest und dabei professionelle Unterstützung suchst, empfehlen wir dir, an unserer Meditation Challenge teilzunehmen.
Helpcenter
Impressum
Datenschutz
AGB
Cookie Einstellungen"""
MENU_LINES = [
    " Web | Moving Images | Texts | Audio | Software | Education | Patron Info | About IA",  # archive.org, 2008
    "Home » Hochbau » Leistungen » Tragwerksplanung",  # rs-ingenieure.de (web-pages-2019-2021)
]


def test_infobox_rows_are_removed_and_its_prose_cell_kept():
    cleaned = clean_text(ESCOPETE_INFOBOX + "\n" + ESCOPETE_PROSE).splitlines()
    assert cleaned[0].startswith("Iste articlo ye en proceso de cambio")
    assert cleaned[1:] == ESCOPETE_PROSE.splitlines()
    assert not any("Superficie" in line or "|" in line.split("[")[0] for line in cleaned)


def test_data_tables_are_kept_whole():
    assert clean_text(ESCOPETE_MAYORS) == "\n".join(line.rstrip() for line in ESCOPETE_MAYORS.splitlines())
    assert clean_text(CAR_DATA) == "\n".join(line.rstrip() for line in CAR_DATA.splitlines())


def test_a_run_of_menu_lines_is_removed_after_prose():
    assert clean_text(GREATOR_END) == GREATOR_END.splitlines()[0]


def test_menu_lines_are_removed_but_not_short_lists_or_prose_with_separators():
    ingredients = "125 g\nMehl\n65 g\nZucker\n1 TL\nBackpulver"  # chefkoch.de: short lines, but quantities
    kept = "Cheografía[editar | modificar o codigo]\nParis · London"
    assert clean_text("\n".join([*MENU_LINES, ingredients, kept])) == ingredients + "\n" + kept


def test_prose_passes_unchanged():
    assert clean_text(ESCOPETE_PROSE) == ESCOPETE_PROSE


def test_blank_lines_and_trailing_spaces_go():
    assert clean_text("  \nfirst line  \n\n\t\nsecond line\n") == "first line\nsecond line"


@pytest.fixture(scope="module")
def escopete_html() -> str:
    warc = SAMPLES / "warc" / "cc-main-2024-22-whirlwind.warc.gz"
    (page,) = read_html_pages(str(warc), ShardStats(), max_html_bytes=5_000_000)
    return decode_html(page.body, page.http_charset)


def test_trafilatura_path_drops_the_infobox_and_keeps_the_mayors(escopete_html):
    raw = make_extractor("trafilatura", clean=False)(escopete_html)
    text = make_extractor("trafilatura")(escopete_html)
    assert "| Superficie | 19,01 km² |" in raw and "Superficie" not in text
    assert ESCOPETE_PROSE in text
    assert "| 2007–2011 | Hilario López Herrer | Partido Socialista Obrero Español |" in text


def test_resiliparse_keeps_the_article_and_drops_the_infobox(escopete_html):
    text = make_extractor("resiliparse")(escopete_html)
    for paragraph in ESCOPETE_PROSE.splitlines()[:2]:
        assert paragraph in text
    assert "Superficie" not in text and "Codigo postal" not in text and "De Biquipedia" not in text
    assert make_extractor("resiliparse")(escopete_html) == text  # deterministic


def test_resiliparse_keeps_only_the_article_of_a_labelled_page():
    """greator.com: the article's paragraphs stay; the newsletter teasers and footer go."""
    warc = SAMPLES / "extraction_eval" / "pages.warc.gz"
    page = next(p for p in read_html_pages(str(warc), ShardStats(), 5_000_000) if "greator.com" in p.url)
    text = make_extractor("resiliparse")(decode_html(page.body, page.http_charset))
    assert "Innere Zufriedenheit ist ein wichtiger Faktor für unser Wohlbefinden" in text
    assert "Meditation ist eine wirksame Methode, um innere Zufriedenheit zu erlangen." in text
    for boilerplate in ("Cookie Einstellungen", "Melde dich zum Newsletter an", "Mini-Kurs", "© copyright"):
        assert boilerplate not in text
