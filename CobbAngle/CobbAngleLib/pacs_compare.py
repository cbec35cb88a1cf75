"""``mskmorph pacs compare --patient-id ID``: the patient's latest spine film against the one before.

    mskmorph pacs compare --url URL --patient-id 12345 [--prior UID --current UID] [--out DIR] [--no-store]

DICOMweb (``MSKCommonLib.pacs``: the same access, credentials and messages as ``mskmorph pacs
cobb``): QIDO-RS finds the patient's studies, their film series (not SR, SEG, ...; not our own
Secondary Captures) and their images, and our Cobb SRs ("MSKMorphometry Cobb angles"); the films
are ordered by study date and time (then series, then instance number). The latest is the current
film and the one before it the prior (``--prior`` / ``--current``: a SOP Instance UID or a Study
Instance UID, whose latest film is taken). WADO-RS downloads the two films and the prior film's SR
when there is one; ``mskmorph compare`` compares them (``CobbAngleLib.compare_cli``: the network,
or ``--prior-landmarks`` / ``--current-landmarks``), and STOW-RS stores the follow-up SR, which
references both films and the prior SR, in the current film's study. Exit status as ``mskmorph
pacs cobb``: 0 done, 1 nothing to compare (one line why), 2 the PACS could not be used.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from MSKCommonLib import pacs

from . import compare_cli, followup

SR_DESCRIPTION = "MSKMorphometry Cobb angles"  # the series description of our Cobb SRs (CobbAngleLib.dicom)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    query = parser.add_argument_group("which films (QIDO-RS)")
    query.add_argument("--patient-id", required=True, metavar="ID", help="the patient's ID in the PACS")
    query.add_argument("--prior", metavar="UID", help="the prior film: its SOP Instance UID, or a Study Instance UID "
                                                      "(its latest film); default the film before the current one")
    query.add_argument("--current", metavar="UID", help="the current film (the same); default the patient's latest")
    pacs.add_access_options(parser)
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="keep the films and the follow-up's files here (default: a temporary folder, removed)")
    parser.add_argument("--no-store", action="store_true", help="compare and write, but store nothing in the PACS")
    compare_cli.add_compare_options(parser)


@dataclass
class Film:
    study: str
    series: str
    sop: str
    order: tuple  # (study date, study time, series number, instance number)


def _value(item: dict, tag: str) -> Optional[str]:
    return pacs._value(item, tag)


def _int(text: Optional[str]) -> int:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return 0


def find_films(client, patient_id: str) -> tuple[list[Film], dict]:
    """The patient's films, oldest first, and our Cobb SRs: {film SOP UID: (study, series, SR SOP UID)}."""
    films, srs = [], []
    studies = client.search_for_studies(search_filters={"PatientID": patient_id},
                                        fields=["StudyDate", "StudyTime"])
    for study_item in studies:
        study = _value(study_item, "0020000D")
        date, time = _value(study_item, "00080020") or "", _value(study_item, "00080030") or ""
        for series_item in client.search_for_series(study_instance_uid=study,
                                                    fields=["SeriesDescription", "SeriesNumber", "Modality"]):
            series = _value(series_item, "0020000E")
            modality = (_value(series_item, "00080060") or "").upper()
            description = _value(series_item, "0008103E") or ""
            number = _int(_value(series_item, "00200011"))
            if modality == "SR" and description == SR_DESCRIPTION:
                srs.append((study, series))
                continue
            if modality in pacs.NOT_FILMS or description.startswith("MSKMorphometry"):
                continue  # reports, segmentations, and our own copies of films
            for item in client.search_for_instances(study_instance_uid=study, series_instance_uid=series,
                                                    fields=["InstanceNumber"]):
                films.append(Film(study, series, _value(item, "00080018"),
                                  (date, time, number, _int(_value(item, "00200013")))))
    films.sort(key=lambda f: f.order)
    reports = {}
    for study, series in srs:
        for item in client.search_for_instances(study_instance_uid=study, series_instance_uid=series):
            sop = _value(item, "00080018")
            sr = client.retrieve_instance(study, series, sop)
            from .followup_dicom import reference_from_sr

            try:
                film = reference_from_sr(sr).SOPInstanceUID
            except ValueError:
                continue
            reports[film] = (study, series, sop)  # the last one found stands for the film
    return films, reports


def choose(films: list[Film], prior: Optional[str], current: Optional[str]) -> tuple[Film, Film]:
    """(prior, current): as asked (a SOP or a study UID), else the latest film and the one before it."""

    def pick(uid: str, what: str) -> Film:
        exact = [f for f in films if f.sop == uid]
        in_study = [f for f in films if f.study == uid]
        if not (exact or in_study):
            raise followup.FollowUpError(f"the {what} film {uid} is not among the patient's films in the PACS")
        return (exact or in_study)[-1]

    if len(films) < 2 and not (prior and current):
        raise followup.FollowUpError(f"the patient has {len(films)} film(s) in the PACS; a follow-up needs two")
    cur = pick(current, "current") if current else films[-1]
    if prior:
        pri = pick(prior, "prior")
    else:
        earlier = [f for f in films if f.order < cur.order or (f.order == cur.order and films.index(f) < films.index(cur))]
        if not earlier:
            raise followup.FollowUpError("no film of the patient is older than the current one")
        pri = earlier[-1]
    if pri.sop == cur.sop:
        raise followup.FollowUpError("the prior and the current film are the same film")
    return pri, cur


def run(args) -> int:
    def body(client, settings, work):
        try:
            return _run(args, client, settings, work)
        except (followup.FollowUpError, ValueError) as e:
            print(f"mskmorph pacs compare: {e}", file=sys.stderr)
            return 1

    return pacs.run_session(args, body, prefix="mskmorph-pacs-compare-")


def _run(args, client, settings: dict, work: Path) -> int:
    films, reports = find_films(client, args.patient_id)
    prior, current = choose(films, args.prior, args.current)
    folder = work / "films"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for label, film in (("prior", prior), ("current", current)):
        ds = client.retrieve_instance(film.study, film.series, film.sop)
        paths[label] = folder / f"{film.sop}.dcm"
        ds.save_as(str(paths[label]), enforce_file_format=True)
    prior_sr = None
    if prior.sop in reports:
        ds = client.retrieve_instance(*reports[prior.sop])
        prior_sr = folder / f"{prior.sop}_sr.dcm"
        ds.save_as(str(prior_sr), enforce_file_format=True)
    print(f"prior: {prior.sop} (study {prior.study}, {prior.order[0] or 'no date'})"
          + (" with its SR" if prior_sr else ""))
    print(f"current: {current.sop} (study {current.study}, {current.order[0] or 'no date'})")
    out = work / "follow_up"
    result, written = compare_cli.compare_paths(paths["prior"], paths["current"], out, args, prior_sr=prior_sr)
    compare_cli.print_result(result, written)
    if args.no_store or "dicom_sr" not in written:
        print("nothing stored" + (" (--no-store)" if args.no_store else ""))
        return 0
    import pydicom

    sr = pydicom.dcmread(str(written["dicom_sr"]))
    try:
        response = client.store_instances([sr], study_instance_uid=current.study)
    except Exception as e:
        import requests

        if isinstance(e, requests.exceptions.RequestException):
            raise pacs.PacsError(pacs.explain(e, settings["url"])) from None
        raise
    if getattr(response, "FailedSOPSequence", None):
        print("mskmorph pacs compare: the PACS refused the follow-up SR", file=sys.stderr)
        return 1
    print(f"stored the follow-up SR in study {current.study}")
    return 0
